//! A small HTTP client for the Kafka Connect-compatible REST API of `tributary serve`: one
//! request path that adds the credentials, reads the JSON answer and turns Connect's error
//! envelope (`{"error_code", "message"}`) into an error that says what went wrong.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::Value;

/// What can go wrong talking to the REST API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url} is not an http:// or https:// URL (--url or TRIBUTARY_URL)")]
    BadUrl { url: String },
    #[error(
        "cannot reach tributary at {url}: {reason}; is `tributary serve` running there? \
         (set --url or TRIBUTARY_URL)"
    )]
    Unreachable { url: String, reason: String },
    /// The API answered with an error status; `message` is the envelope's message when the
    /// body had one.
    #[error("{message} (HTTP {status} from {method} {path})")]
    Api {
        status: u16,
        method: Method,
        path: String,
        message: String,
    },
    #[error("the answer to {method} {path} is not JSON: {reason}")]
    NotJson {
        method: Method,
        path: String,
        reason: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

/// How to authenticate, as `[rest]` in the worker config asks.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    Bearer(String),
    /// `user:password`.
    Basic(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret itself never reaches a log or an error message.
        let kind = match self {
            Self::None => "None",
            Self::Bearer(_) => "Bearer([hidden])",
            Self::Basic(_) => "Basic([hidden])",
        };
        f.write_str(kind)
    }
}

/// The REST API at one base URL.
#[derive(Debug)]
pub struct RestClient {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl RestClient {
    pub fn new(url: &str, credentials: Credentials) -> Result<Self, ClientError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl { url: base });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            base,
            credentials,
            http,
        })
    }

    /// Sends one request and returns the JSON answer (`Value::Null` when the body is empty, as
    /// for 204); an error status becomes [`ClientError::Api`] with the envelope's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ClientError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        request = match &self.credentials {
            Credentials::None => request,
            Credentials::Bearer(token) => request.bearer_auth(token),
            Credentials::Basic(user_password) => {
                let (user, password) = user_password
                    .split_once(':')
                    .unwrap_or((user_password.as_str(), ""));
                request.basic_auth(user, Some(password))
            }
        };
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            })?;
        if !status.is_success() {
            return Err(ClientError::Api {
                status: status.as_u16(),
                method,
                path: path.to_owned(),
                message: envelope_message(status, &text),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ClientError::NotJson {
            method,
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// The message of Connect's error envelope, or a short description of a body without one.
fn envelope_message(status: StatusCode, text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
    {
        return message.to_owned();
    }
    let reason = status.canonical_reason().unwrap_or("error");
    if text.trim().is_empty() {
        reason.to_owned()
    } else {
        // A proxy's HTML page, say: the first line is enough to recognise it.
        let first = text.lines().next().unwrap_or_default();
        let short: String = first.chars().take(200).collect();
        format!("{reason}: {short}")
    }
}

/// reqwest hides the useful part ("Connection refused") in its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_message_is_what_the_user_sees() {
        let text = r#"{"error_code":404,"message":"Connector x not found"}"#;
        assert_eq!(
            envelope_message(StatusCode::NOT_FOUND, text),
            "Connector x not found"
        );
        assert_eq!(
            envelope_message(StatusCode::BAD_GATEWAY, "<html>\n<body>"),
            "Bad Gateway: <html>"
        );
        assert_eq!(
            envelope_message(StatusCode::UNAUTHORIZED, ""),
            "Unauthorized"
        );
    }

    #[test]
    fn urls_must_be_http_and_lose_their_trailing_slash() {
        let client = RestClient::new("http://127.0.0.1:8083/", Credentials::None).expect("valid");
        assert_eq!(client.base, "http://127.0.0.1:8083");
        let err = RestClient::new("127.0.0.1:8083", Credentials::None).expect_err("no scheme");
        assert!(err.to_string().contains("TRIBUTARY_URL"), "{err}");
    }

    #[test]
    fn credentials_stay_out_of_debug() {
        let shown = format!("{:?}", Credentials::Basic("u:secret-pw".into()));
        assert!(!shown.contains("secret-pw"), "{shown}");
    }
}
