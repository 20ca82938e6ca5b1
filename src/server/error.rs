//! OpenAI error JSON (`{"error": {"message", "type", "param", "code"}}`) and the HTTP status of
//! each failure: 400 invalid field (named in `param`), 401 API key, 404 unknown model, voice or
//! route, 413 body too large, 422 unsupported combination, 429 queue full (with
//! `Retry-After`), 503 shutting down, 500 internal faults only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 for an invalid field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            code: Some("invalid_value"),
            ..Self::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// 400 without one field to blame.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(param: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            param: param.map(str::to_string),
            code: Some("not_found"),
            ..Self::new(StatusCode::NOT_FOUND, message)
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..Self::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("request_too_large"),
            ..Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
        }
    }

    /// 422: each field is valid, the combination is not supported.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            code: Some("unsupported"),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
    }

    pub fn overloaded(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(1),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("unavailable"),
            retry_after: Some(5),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// OpenAI's error `type` for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The error object (also the payload of an SSE error event).
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// Engine and decoding errors: what the client did wrong is a 4xx; the rest is a 500 that
/// fails only this request.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::BadRequest(m) => {
                if m.contains("can never fit") {
                    ApiError {
                        code: Some("context_length_exceeded"),
                        ..ApiError::bad_request(m.clone())
                    }
                } else {
                    ApiError::bad_request(m.clone())
                }
            }
            Error::Audio(m) => ApiError {
                code: Some("invalid_audio"),
                ..ApiError::bad_request(format!("audio: {m}"))
            },
            Error::Overloaded(m) => ApiError::overloaded(format!("server busy: {m}")),
            Error::Capacity { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::bad_request(e.to_string())
            },
            _ => ApiError::internal(format!("internal error: {e}")),
        }
    }
}
