//! The one error type of the library and its mapping to RFC 9457 problem responses.

use lambda_http::{http::StatusCode, Body, Response};
use serde_json::json;

/// Every failure a handler, store or trainer step can report.
///
/// Client errors name the field and the value that was rejected, so the caller
/// can fix the request without reading logs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path or query parameter, or a body field, failed validation.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidField { field: String, value: String, reason: String },

    /// The body is not the JSON the route expects.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),

    /// The request carries a body with a content type other than JSON.
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),

    /// The body is larger than the route accepts.
    #[error("request body of {size} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { size: usize, max: usize },

    /// The item is not in the active model version's catalogue.
    #[error("item {item_id:?} not found in model version {model_version}")]
    ItemNotFound { item_id: String, model_version: String },

    /// The user has neither a trained profile nor stored events.
    #[error("user {0:?} not found: no purchases in the model and no stored events")]
    UserNotFound(String),

    /// The caller's token names another user than the path.
    #[error("the token's {claim:?} claim {found}, so it may not act for user {user_id:?}: use the caller's own user id")]
    Forbidden { user_id: String, claim: String, found: String },

    /// No route of this function matches the method and path.
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },

    /// The path exists but not for this method.
    #[error("method {method} is not allowed on {path}: use {allowed}")]
    MethodNotAllowed { method: String, path: String, allowed: &'static str },

    /// The trainer has not published a model version yet.
    #[error("no model version is active: run the trainer to publish one")]
    NoActiveModel,

    /// An artifact in S3 is missing, truncated or differs from its manifest.
    #[error("artifact {key} of model version {model_version} is invalid: {reason}")]
    InvalidArtifact { model_version: String, key: String, reason: String },

    /// A DynamoDB call failed after the SDK's retries.
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    DynamoDb { operation: &'static str, table: String, message: String },

    /// An S3 call failed after the SDK's retries.
    #[error("S3 {operation} of s3://{bucket}/{key} failed: {message}")]
    S3 { operation: &'static str, bucket: String, key: String, message: String },

    /// Another publisher switched the active model version first.
    #[error("active model version changed to {found:?} while publishing (expected {expected:?}): rerun the trainer")]
    PublishConflict { expected: Option<String>, found: Option<String> },

    /// ONNX Runtime failed to load or run the ranker.
    #[error("ranker failed: {0}")]
    Ranker(String),

    /// A required environment variable is missing or invalid.
    #[error("configuration {name} is invalid: {reason}")]
    Config { name: String, reason: String },

    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The input file of the trainer could not be read.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),

    /// Training could not produce a model from the data it was given.
    #[error("training failed: {0}")]
    Training(String),

    /// An evaluation could not run: a bad split, an unreadable list file or an unwritable output.
    #[error("evaluation failed: {0}")]
    Evaluation(String),
}

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::InvalidField`] from displayable parts.
    pub fn invalid(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidField { field: field.into(), value: value.into(), reason: reason.into() }
    }

    /// Returns the HTTP status the error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidField { .. } | Error::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ItemNotFound { .. } | Error::UserNotFound(_) | Error::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::PublishConflict { .. } => StatusCode::CONFLICT,
            Error::NoActiveModel | Error::InvalidArtifact { .. } | Error::DynamoDb { .. } | Error::S3 { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Ranker(_) | Error::Config { .. } | Error::Io { .. } | Error::Ingest(_) | Error::Training(_) | Error::Evaluation(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Returns the short, stable problem title for the error kind.
    pub fn title(&self) -> &'static str {
        match self {
            Error::InvalidField { .. } => "Invalid request field",
            Error::InvalidJson(_) => "Invalid JSON body",
            Error::UnsupportedMediaType(_) => "Unsupported media type",
            Error::PayloadTooLarge { .. } => "Request body too large",
            Error::ItemNotFound { .. } => "Item not found",
            Error::UserNotFound(_) => "User not found",
            Error::RouteNotFound { .. } => "Route not found",
            Error::MethodNotAllowed { .. } => "Method not allowed",
            Error::Forbidden { .. } => "Forbidden",
            Error::NoActiveModel => "No active model",
            Error::InvalidArtifact { .. } => "Model artifact invalid",
            Error::DynamoDb { .. } | Error::S3 { .. } => "Dependency unavailable",
            Error::PublishConflict { .. } => "Publish conflict",
            Error::Ranker(_) => "Ranker failure",
            Error::Config { .. } => "Configuration error",
            Error::Io { .. } => "File error",
            Error::Ingest(_) => "Input file error",
            Error::Training(_) => "Training failure",
            Error::Evaluation(_) => "Evaluation failure",
        }
    }

    /// Returns the message for logs: the display text without the rejected
    /// value, because a body field's value may hold anything the client sent.
    pub fn log_message(&self) -> String {
        match self {
            Error::InvalidField { field, reason, .. } => format!("invalid {field}: {reason}"),
            other => other.to_string(),
        }
    }

    /// Renders the error as an `application/problem+json` response (RFC 9457).
    ///
    /// Dependency failures carry `Retry-After` so clients back off and resend.
    pub fn to_response(&self) -> Response<Body> {
        let status = self.status();
        let mut problem = json!({
            "type": "about:blank",
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let Error::InvalidField { field, value, .. } = self {
            problem["field"] = json!(field);
            problem["value"] = json!(value);
        }

        let mut builder = Response::builder().status(status).header("content-type", "application/problem+json");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header("retry-after", "1");
        }
        if let Error::MethodNotAllowed { allowed, .. } = self {
            builder = builder.header("allow", *allowed);
        }
        builder.body(Body::Text(problem.to_string())).expect("static headers are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_field_maps_to_400() {
        let response = Error::invalid("limit", "0", "must be between 1 and 100").to_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["content-type"], "application/problem+json");

        let Body::Text(text) = response.body() else { panic!("expected a text body") };
        let problem: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(problem["status"], 400);
        assert_eq!(problem["field"], "limit");
        assert_eq!(problem["value"], "0");
        assert!(problem["detail"].as_str().unwrap().contains("between 1 and 100"));
    }

    #[test]
    fn dependency_failure_sets_retry_after() {
        let error = Error::DynamoDb { operation: "PutItem", table: "events".into(), message: "timed out".into() };
        let response = error.to_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "1");
    }
}
