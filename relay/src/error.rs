//! The one error type at the HTTP boundary.
//!
//! Every refusal — bad input, limits, origin, bus trouble — is an [`ApiError`] carrying a stable
//! [`ErrorCode`]. Over HTTP it becomes a status plus the JSON error event; on a WebSocket the
//! same body travels as an `error` event and the socket stays open. Refusals are logged at
//! `debug` (anyone can cause them by the thousand, so they would let anyone flood the logs;
//! they are counted instead); relay faults at `error`.

use std::time::Duration;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorBody, ErrorCode, ServerEvent};

use crate::bus::BusError;
use crate::event;
use crate::validate::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// When to try again, for refusals that pass: becomes `Retry-After` and `retry_after_ms`.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, `retry_after_ms`).
    pub fn retry_after(mut self, wait: Duration) -> ApiError {
        self.retry_after = Some(wait);
        self
    }

    pub fn rate_limited(retry_after: Duration) -> ApiError {
        ApiError {
            code: ErrorCode::RateLimited,
            message: "too many messages; slow down".into(),
            retry_after: Some(retry_after),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::BadRequest
            | ErrorCode::InvalidRoom
            | ErrorCode::InvalidName
            | ErrorCode::InvalidText
            | ErrorCode::TextTooLong => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ErrorCode::InvalidHost => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyConnections
            | ErrorCode::TooManyRooms
            | ErrorCode::ShuttingDown
            | ErrorCode::Overloaded
            | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire form shared by HTTP bodies and WebSocket error events.
    pub fn event(&self) -> ServerEvent {
        ServerEvent::Error(ErrorBody {
            code: self.code,
            message: self.message.clone(),
            retry_after_ms: self.retry_after.map(|d| d.as_millis() as u64),
            key: None,
        })
    }

    pub fn to_json(&self) -> String {
        event::json(&self.event())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A refusal — bad input, a limit, a full relay, Redis away — is logged at debug only:
        // anyone can cause thousands a second, and an operator sees them counted in
        // `/metrics` and in the periodic summary (`logging`). Only a fault of the relay's own
        // is an error.
        if self.code == ErrorCode::Internal {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code.as_str(), message = %self.message, "request refused");
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response();
        // For the rejection counter, which sees responses but not their bodies.
        response.extensions_mut().insert(self.code);
        if let Some(wait) = self.retry_after {
            // Retry-After is in whole seconds; round up so a client that obeys it succeeds.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        } else {
            ApiError::new(ErrorCode::BadRequest, rejection.body_text())
        }
    }
}

impl From<BusError> for ApiError {
    fn from(err: BusError) -> ApiError {
        match err {
            // Only asked for when the client's budget was spent (see `AppState::publish`).
            BusError::NewRoomRefused => ApiError::new(
                ErrorCode::RateLimited,
                "this address has opened too many new rooms lately; try again later",
            ),
            BusError::TooManyRooms => ApiError::new(
                ErrorCode::TooManyRooms,
                "the relay has no room for another room",
            ),
            BusError::Unavailable(why) => {
                // The cause (a Redis error) is for operators, not clients; the listener logs
                // each outage once, so per-request detail stays at debug level.
                tracing::debug!(%why, "message bus unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "messages cannot be stored right now; try again in a moment",
                )
            }
            BusError::KeyReused => ApiError::new(
                ErrorCode::KeyReused,
                "this idempotency key was used for another message; nothing was stored (use a \
                 fresh key for every new message)",
            ),
            BusError::OutcomeUnknown(why) => {
                tracing::debug!(%why, "message bus did not answer a write");
                ApiError::new(
                    ErrorCode::OutcomeUnknown,
                    "the relay could not learn whether the message was stored; try again with \
                     the same idempotency key, which is stored at most once",
                )
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> ApiError {
        ApiError::new(invalid.code, invalid.message)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, format!("malformed JSON: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_sets_retry_after_rounded_up() {
        let response = ApiError::rate_limited(Duration::from_millis(1200)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn body_is_the_error_event() {
        let err = ApiError::new(ErrorCode::InvalidRoom, "nope");
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"invalid_room","message":"nope"}"#
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
