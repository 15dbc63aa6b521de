//! Errors on the wire: [`Error::kind()`] to an HTTP status in one place (SPEC H3, E1).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, ErrorKind};

/// The one mapping from an error's kind to an HTTP status.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Denied => StatusCode::FORBIDDEN,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A JSON error document: `{kind, error, message}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The stable group: `invalid_input`, `unauthenticated`, `not_found`, `denied`,
    /// `conflict`, `busy`, `storage`, or for requests the server could not read,
    /// `bad_request`, `too_many_requests`, `internal`.
    pub kind: String,
    /// The error's name (`ProjectNotFound`, `PermissionDenied`, `InvalidRequest`, ...).
    pub error: String,
    /// A message for people (SPEC E2).
    pub message: String,
}

/// An error response of the native API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error about the request itself, before any library call.
    pub fn request(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        let kind = match status {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            s if s.is_server_error() => "internal",
            _ => "bad_request",
        };
        Self {
            status,
            body: ErrorBody {
                kind: kind.into(),
                error: error.into(),
                message: message.into(),
            },
        }
    }

    /// The server failed on its own (a panic, a lost task).
    pub fn internal() -> Self {
        Self::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "internal server error",
        )
    }

    /// Too much work is queued; retry later.
    pub fn overloaded() -> Self {
        Self::request(
            StatusCode::TOO_MANY_REQUESTS,
            "Overloaded",
            "the server is overloaded; retry shortly",
        )
    }

    /// No credential in the request.
    pub fn missing_credential() -> Self {
        Self::request(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "missing credential: send `Authorization: Bearer <token>`",
        )
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self {
            status: status_of(e.kind()),
            body: ErrorBody {
                kind: e.kind().as_str().into(),
                error: e.name().into(),
                message: e.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = match r.status() {
            // A mistyped or unknown field is as much a malformed request as bad syntax (H6).
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        let error = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            _ => "InvalidRequest",
        };
        Self::request(status, error, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::request(StatusCode::BAD_REQUEST, "InvalidRequest", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::request(StatusCode::BAD_REQUEST, "InvalidRequest", r.body_text())
    }
}

/// A JSON object body, with JSON errors for every bad body (H6): `415` without
/// `Content-Type: application/json`, `413` over the body limit, `400` for anything
/// but an object of the expected fields. Unlike `axum::Json`, a JSON array is refused
/// even where serde would read it as a struct's fields in order.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(Self::Rejection::request(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                let status = r.status();
                let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "PayloadTooLarge"
                } else {
                    "InvalidRequest"
                };
                ApiError::request(status, error, r.body_text())
            })?;
        let first = bytes.iter().find(|b| !b" \t\r\n".contains(b));
        if first != Some(&b'{') {
            return Err(ApiError::request(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "the body must be a JSON object",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// `application/json` or `application/*+json`, with or without parameters.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// `axum::extract::Query` with JSON errors.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryArgs<T>(pub T);

/// `axum::extract::Path` with JSON errors.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct PathArgs<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h3_every_kind_has_its_status() {
        let cases = [
            (ErrorKind::InvalidInput, 422),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Denied, 403),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Busy, 503),
            (ErrorKind::Storage, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(status_of(kind).as_u16(), status, "{kind}");
        }
    }
}
